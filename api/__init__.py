"""The HTTP front: accepts jobs, answers about them, never imports the worker or torch."""
