"""The desktop: tray icon, menu, notifications and the details window (DESIGN §7).

Only this package imports pystray, Pillow, tkinter, plyer and desktop-notifier, and always lazily from the
composition root (fluxmon.cli), so that `fluxmon watch` and the tests of core/ run without a display.
"""
