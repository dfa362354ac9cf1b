"""porter: ports torchtune training recipes onto a job runtime, and runs them."""

__version__ = "0.1.0"
