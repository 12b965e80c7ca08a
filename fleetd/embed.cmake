# Writes OUT, a C file holding the bytes of IN as fleetd_openapi_json[] (cmake -P script).
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE ${OUT} "/* Generated from schemas/openapi.json; do not edit. */\n#include <stddef.h>\n"
     "const unsigned char fleetd_openapi_json[] = {${bytes}0x00};\n"
     "const size_t fleetd_openapi_json_len = ${len};\n")
