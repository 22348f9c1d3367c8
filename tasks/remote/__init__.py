"""One SSH connection type and what runs on top of it: the install recipe, the fan-out."""
