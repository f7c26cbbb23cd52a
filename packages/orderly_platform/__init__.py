"""The platform layer every orderly process stands on: settings, logging, the embedded stack."""
