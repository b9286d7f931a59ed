"""midimix."""
