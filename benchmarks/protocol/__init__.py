"""The transfer panel and the protocols behind reported results."""
