"""The console's pages, one module each, every one an ``APIRouter`` named ``router``."""
