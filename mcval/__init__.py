"""mcval: re-measure and verify model-compression results submitted by course teams."""

__version__ = "0.1.0"
