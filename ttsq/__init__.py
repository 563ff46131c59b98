"""The `ttsq` command: run the whole stack, or one piece of it, or say something."""
