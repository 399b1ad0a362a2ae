"""Template tag libraries of the web application."""
