"""Fault injection: real `oi-bot` processes, one fault each, and what Slack received."""
