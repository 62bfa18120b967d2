"""fermm Gradio app (also the Hugging Face Space entry point): python app.py"""
from fermm.serve import memory, threads

memory.configure_malloc()  # before torch and Gradio start their threads (python -m bench.session measures it)
threads.configure_threads()  # one thread per request: concurrent requests fill the cores (bench.load measures it)

from fermm.serve.ui import build_demo, launch_options  # noqa: E402 - fermm.serve switches Gradio's analytics off first

demo = build_demo()

if __name__ == "__main__":
    demo.launch(**launch_options())
