"""colorize: automatic colorization of grayscale photographs (L in, ab out) with fastai."""

import warnings

# fastai 2.8 decorates a few functions with `torch.jit.script` at import time, which torch 2.14 answers with a
# FutureWarning in every notebook's import cell and every `colorize` command; the call is fastai's, not ours.
# Filtered here, before anything imports torch, for that one message only.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

__version__ = "0.1.0"
