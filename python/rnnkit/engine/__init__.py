"""The model engine: eager tensors and the tape (tape.py), the functional graph (functional.py)."""
