"""A node's transcript read from the store: the model (``model``), its loading, rendering and export."""
