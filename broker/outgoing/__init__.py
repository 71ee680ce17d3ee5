"""Named outgoing connections services reach as ``self.out.<kind>[name]``."""
