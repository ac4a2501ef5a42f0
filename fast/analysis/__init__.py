"""The paper's analyses of trained models (Sections 5.3-5.5, App. B.3-B.5, B.9) and figures."""
