"""The sparseqa web demo: ``python app.py [--synthetic] [--model M] [--host H] [--port N] ...`` (see ``--help``).

Also the entry point of a Hugging Face Space (``app_file: app.py``), configured there with SPARSEQA_* variables.
"""

from sparseqa.interface import build_demo, launch, load_service, parse_options


def main() -> None:
    """Parse the options, load the models once, serve the page until interrupted."""
    options = parse_options()
    service = load_service(options.settings)
    launch(build_demo(service), host=options.host, port=options.port, share=options.share, auth=options.auth)


if __name__ == "__main__":
    main()
