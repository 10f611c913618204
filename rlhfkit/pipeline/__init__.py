"""The end-to-end job behind `rlhfkit run`. Top layer: may import every other package."""
