"""The inventory service: reserves, commits and releases orders' stock in Redis."""
