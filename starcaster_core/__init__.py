"""STARCaster core: pure PyTorch, importable without ComfyUI."""
