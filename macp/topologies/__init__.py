"""Topologies declared in YAML: schema, placement and wiring."""
