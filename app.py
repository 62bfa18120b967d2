"""fermm Gradio app (also the Hugging Face Space entry point): python app.py"""
from fermm.serve.ui import build_demo, launch_options  # fermm.serve switches Gradio's analytics off first

demo = build_demo()

if __name__ == "__main__":
    demo.launch(**launch_options())
