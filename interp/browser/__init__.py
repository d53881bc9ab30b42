"""Feature store builder read by the Streamlit app (data only, no UI code). Not built yet."""
