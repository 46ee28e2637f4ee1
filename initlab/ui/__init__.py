"""Everything that imports streamlit lives here; `app.py` only calls `page.main()`."""
