"""Persistence: SQLAlchemy models, repositories, engine and session set-up."""
