"""Actors: the Agent base class and the control-plane actors."""
