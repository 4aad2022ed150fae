"""Small real PDF documents, written by hand (text pages with a document info dictionary).

The example site serves them and the tests make their own: no binary fixtures.
"""

from __future__ import annotations

import io

from pypdf import PdfReader, PdfWriter

LINE_HEIGHT = 16


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def text_pdf(pages: list[list[str]], info: dict[str, str] | None = None) -> bytes:
    """A PDF with one page per entry of ``pages`` (its lines in Helvetica) and ``info``
    (``Title``, ``Author``, ``CreationDate`` as ``D:YYYYMMDDHHmmSS``...)."""
    objects: list[bytes] = [b"", b""]  # 1: catalog, 2: pages (filled in below)
    font = len(objects) + 1
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    page_ids = []
    for lines in pages:
        ops = ["BT", "/F1 12 Tf", f"{LINE_HEIGHT} TL", "72 760 Td"]
        ops += [f"({_escaped(line)}) Tj T*" for line in lines]
        stream = "\n".join([*ops, "ET"]).encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        content = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R"
            b" /Resources << /Font << /F1 %d 0 R >> >> >>" % (content, font)
        )
        page_ids.append(len(objects))
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    kids = b" ".join(b"%d 0 R" % n for n in page_ids)
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_ids))
    trailer_info = b""
    if info:
        entries = " ".join(f"/{key} ({_escaped(value)})" for key, value in info.items())
        objects.append(f"<< {entries} >>".encode("latin-1"))
        trailer_info = b" /Info %d 0 R" % len(objects)
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n"
              % (len(objects) + 1, trailer_info, xref))
    return out.getvalue()


def encrypted_pdf(document: bytes, password: str) -> bytes:
    """``document`` encrypted (RC4, 128 bits) with a user password."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(document)))
    writer.encrypt(user_password=password, owner_password=password + "-owner",
                   algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
