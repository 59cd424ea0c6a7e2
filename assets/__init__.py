"""Icons and the XDG autostart entry, shipped as package data and read with importlib.resources."""
