"""initlab's dashboard: `streamlit run app.py`."""

from initlab.ui.page import main

main()
