"""Helpers shared by the test modules: the seeded workspace, what a person sees, and waiting for it."""
