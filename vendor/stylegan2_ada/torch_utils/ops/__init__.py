"""Pure-PyTorch image ops (FIR resampling, bias+activation, resampled conv, fma); all autograd-native, so any-order gradients work."""
