"""rpi-braze-sync: sends Redpoint Interaction exports to Braze /users/track."""

__version__ = "0.1.0"
