"""GS1 identifiers in every form a pack or case arrives in (barcode scans, element strings, Digital
Link URIs, EPC URIs) and back; biip does the barcode work, this package the rest."""
