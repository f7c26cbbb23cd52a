"""The order service: orderly's HTTP front door. Its only write is one atomic append."""
