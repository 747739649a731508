"""Model: import the embedded base model, resize and initialise embedding rows for a new vocabulary."""
