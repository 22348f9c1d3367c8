"""Deploy stages: each a function from typed inputs to a typed result."""
