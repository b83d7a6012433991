"""Reports for inspectors: custody trails rendered as PDF, CSV and SVG from plain data."""
