"""`python -m tests.reliability.gcs_emulator --port P --bucket B`: gcp-storage-emulator, in memory, with the one
response header TensorStore needs that it does not send.

GCS answers a media download with `x-goog-generation` (the object's generation; "Response headers" of
https://cloud.google.com/storage/docs/xml-api/reference-headers#xgooggeneration), and TensorStore's GCS driver
reads an object's generation from it, failing with "Malformed StorageGeneration" without it (seen when orbax's
OCDBT manifest is read back). gcp-storage-emulator 2026.7 does not send it; this adds it before the server's
routes take their handlers.
"""

import argparse
import functools

from gcp_storage_emulator.handlers import objects


def _with_generation(download):
    @functools.wraps(download)
    def wrapped(request, response, storage, *args, **kwargs):
        result = download(request, response, storage, *args, **kwargs)
        try:
            obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
        except Exception:  # not found: the handler already answered 404
            return result
        response["x-goog-generation"] = str(obj["generation"])
        response["x-goog-metageneration"] = str(obj.get("metageneration", "1"))
        return result

    return wrapped


objects.download = _with_generation(objects.download)

from gcp_storage_emulator.server import create_server  # noqa: E402  (after the patch: routes bind the handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bucket", required=True)
    args = parser.parse_args()
    server = create_server("127.0.0.1", args.port, in_memory=True, default_bucket=args.bucket)
    server.run()


if __name__ == "__main__":
    main()
