"""A distributed, fault-tolerant cron compatible with Dkron's REST API and job JSON."""

__version__ = "0.1.0"
NAME = "dkron-py"
CODENAME = "first-light"
