"""Simulated producers: a CM-side uploader and a device side with sessions, commands and relay."""
