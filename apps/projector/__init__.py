"""The projector: consumer groups that apply events to Postgres, one group per projection."""
