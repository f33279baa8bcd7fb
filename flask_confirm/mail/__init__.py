"""Mail composition."""
