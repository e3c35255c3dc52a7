"""Pure-PyTorch reference ops and the frontend that dispatches to the native extension."""
