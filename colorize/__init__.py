"""colorize: automatic colorization of grayscale photographs (L in, ab out) with fastai."""

__version__ = "0.1.0"
