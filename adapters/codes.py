"""Code lists every agency's messages share, so no two agencies ever disagree on a code."""

# UN/ECE Recommendation 19 modes of transport.
MODE_CODES = {"sea": "1", "rail": "2", "road": "3", "air": "4", "postal": "5", "fixed_installation": "7",
              "inland_waterway": "8"}

# UN/EDIFACT 1001 document names; ZZZ is "mutually defined".
DOCUMENT_CODES = {
    "certificate_of_origin": "861", "health_certificate": "852", "phytosanitary_certificate": "851",
    "veterinary_certificate": "853", "import_licence": "911", "export_licence": "811",
    "commercial_invoice": "380", "packing_list": "271", "dangerous_goods_declaration": "890", "other": "ZZZ",
}

# WCO transport means identification type: the IMO ship identification number.
IMO_NUMBER = "10"
