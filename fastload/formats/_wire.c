/* fastload.formats._wire: the two features a reader needs from a tf.train.Example, in C.
 *
 * example_features(buf, bytes_key, int_key) -> (offset, length, value) | None
 *
 * Walks the Example's Features map once and returns where the first value of the BytesList
 * feature ``bytes_key`` lies in ``buf`` (offset and length) and the first value of the
 * Int64List feature ``int_key`` (packed or not, as a signed int64). Returns None when either
 * feature is missing, of another kind, or when anything is malformed: the caller then parses
 * the record with fastload.formats.protowire, which names the problem. No copy is made; the
 * GIL is held (a record takes ~1 us).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

typedef struct {
    const uint8_t *p, *end;
} cursor;

static int varint(cursor *c, uint64_t *out) {
    uint64_t value = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (c->p >= c->end)
            return 0;
        uint8_t byte = *c->p++;
        value |= (uint64_t)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            *out = value;
            return 1;
        }
    }
    return 0;
}

/* The next field: its number, wire type, and for wire type 2 its payload; 0 at the end or on
 * malformed input (ok set to 0 then). */
static int next_field(cursor *c, uint64_t *number, int *wire, cursor *payload, uint64_t *value,
                      int *ok) {
    *ok = 1;
    if (c->p >= c->end)
        return 0;
    uint64_t key;
    if (!varint(c, &key))
        return *ok = 0;
    *number = key >> 3;
    *wire = (int)(key & 7);
    switch (*wire) {
    case 0:
        if (!varint(c, value))
            return *ok = 0;
        return 1;
    case 1:
    case 5: {
        size_t width = *wire == 1 ? 8 : 4;
        if ((size_t)(c->end - c->p) < width)
            return *ok = 0;
        c->p += width;
        return 1;
    }
    case 2: {
        uint64_t size;
        if (!varint(c, &size) || size > (uint64_t)(c->end - c->p))
            return *ok = 0;
        payload->p = c->p;
        payload->end = c->p + size;
        c->p += size;
        return 1;
    }
    default:
        return *ok = 0;
    }
}

static PyObject *example_features(PyObject *self, PyObject *args) {
    Py_buffer buf, bytes_key, int_key;
    if (!PyArg_ParseTuple(args, "y*y*y*:example_features", &buf, &bytes_key, &int_key))
        return NULL;
    const uint8_t *start = (const uint8_t *)buf.buf;
    cursor example = {start, start + buf.len}, features, entry, payload, kind, item;
    uint64_t number, value = 0, label = 0;
    int wire, ok = 1, found_bytes = 0, found_int = 0;
    Py_ssize_t offset = 0, length = 0;
    while (ok && next_field(&example, &number, &wire, &features, &value, &ok)) {
        if (number != 1 || wire != 2)
            continue;
        while (ok && next_field(&features, &number, &wire, &entry, &value, &ok)) {
            if (number != 1 || wire != 2)
                continue;
            cursor name = {NULL, NULL}, feature = {NULL, NULL};
            while (ok && next_field(&entry, &number, &wire, &payload, &value, &ok)) {
                if (number == 1 && wire == 2)
                    name = payload;
                else if (number == 2 && wire == 2)
                    feature = payload;
            }
            if (!ok || name.p == NULL || feature.p == NULL)
                continue;
            size_t name_len = (size_t)(name.end - name.p);
            int is_bytes = name_len == (size_t)bytes_key.len &&
                           memcmp(name.p, bytes_key.buf, name_len) == 0;
            int is_int = name_len == (size_t)int_key.len &&
                         memcmp(name.p, int_key.buf, name_len) == 0;
            if (!is_bytes && !is_int)
                continue;
            if (is_bytes) /* a key given twice: the last entry counts, as in a parsed map */
                found_bytes = 0;
            if (is_int)
                found_int = 0;
            int kinds = 0; /* the Feature's first kind decides, as protowire reads it */
            while (ok && !kinds && next_field(&feature, &number, &wire, &kind, &value, &ok)) {
                if (wire != 2) { /* protowire refuses this Feature: let it say why */
                    ok = 0;
                    break;
                }
                if (number < 1 || number > 3)
                    continue;
                kinds = 1;
                if (is_bytes && number == 1) { /* BytesList: first value */
                    while (ok && next_field(&kind, &number, &wire, &item, &value, &ok))
                        if (number == 1 && wire == 2) {
                            offset = (Py_ssize_t)(item.p - start);
                            length = (Py_ssize_t)(item.end - item.p);
                            found_bytes = 1;
                            break;
                        }
                } else if (is_int && number == 3) { /* Int64List: first value */
                    while (ok && next_field(&kind, &number, &wire, &item, &value, &ok)) {
                        if (number != 1)
                            continue;
                        if (wire == 0) {
                            label = value;
                            found_int = 1;
                        } else if (wire == 2 && item.p < item.end) { /* packed */
                            found_int = varint(&item, &label);
                            ok = found_int;
                        }
                        break;
                    }
                }
            }
        }
    }
    PyBuffer_Release(&buf);
    PyBuffer_Release(&bytes_key);
    PyBuffer_Release(&int_key);
    if (!ok || !found_bytes || !found_int)
        Py_RETURN_NONE;
    return Py_BuildValue("nnL", offset, length, (long long)(int64_t)label);
}

static PyMethodDef methods[] = {
    {"example_features", example_features, METH_VARARGS,
     "example_features(buf, bytes_key, int_key) -> (offset, length, value) | None\n\n"
     "Where the first value of a BytesList feature lies in a serialized tf.train.Example, and "
     "the first value of an Int64List feature; None if either is missing or anything is "
     "malformed (parse it with protowire then)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fastload.formats._wire",
    "The features a reader needs from a tf.train.Example, in C (see example_features).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__wire(void) { return PyModule_Create(&module); }
