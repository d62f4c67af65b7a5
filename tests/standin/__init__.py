"""Local stand-ins for the helpdesk APIs, served over real HTTP on 127.0.0.1 for multi-process tests."""
