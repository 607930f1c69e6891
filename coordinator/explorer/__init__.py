"""Server-rendered explorer pages (Jinja2 templates, inline SVG charts, no build step)."""
