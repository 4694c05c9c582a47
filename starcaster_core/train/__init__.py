"""The staged trainer: identity-aware motion, audio sync (lip reading), views, self-forcing."""
