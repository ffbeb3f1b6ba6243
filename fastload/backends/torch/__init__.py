"""The torch engine: persistent DataLoader workers that decode, crop and resize each sample into
a shared uint8 batch (and finish it there for a CPU target)."""
