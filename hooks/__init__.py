"""The git hook scripts, shipped as package data; `fluxmon hook install` renders and installs them."""
