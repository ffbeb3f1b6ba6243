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
    if (!varint(c, &key) || key >> 3 == 0) /* field number 0 is not a field */
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

/* Whether every field of a message is well formed (what protowire.fields accepts). */
static int well_formed(cursor c) {
    uint64_t number, value;
    int wire, ok = 1;
    cursor payload;
    while (next_field(&c, &number, &wire, &payload, &value, &ok))
        ;
    return ok;
}

/* The payload of a length-delimited field, checked: 0 where protowire's _expect_bytes or
 * fields() would refuse it. */
static int message(int wire, cursor payload) {
    return wire == 2 && well_formed(payload);
}

/* A Feature as protowire._decode_feature reads it: the whole message well formed, then each
 * field length-delimited and well formed up to the first of kind 1-3 (BytesList, FloatList,
 * Int64List), whose number and payload are returned; 0 when malformed, -1 when no kind. */
static int feature_kind(cursor feature, cursor *kind) {
    uint64_t number, value;
    int wire, ok = 1;
    if (!well_formed(feature))
        return 0;
    while (next_field(&feature, &number, &wire, kind, &value, &ok)) {
        if (!message(wire, *kind))
            return 0;
        if (number >= 1 && number <= 3)
            return (int)number;
    }
    return ok ? -1 : 0;
}

/* The first value of a BytesList (every value must be length-delimited). 1 found, 0 none,
 * -1 malformed. */
static int first_bytes(cursor list, cursor *first) {
    uint64_t number, value;
    int wire, ok = 1, found = 0;
    cursor item;
    while (next_field(&list, &number, &wire, &item, &value, &ok)) {
        if (number != 1)
            continue;
        if (wire != 2)
            return -1;
        if (!found)
            *first = item;
        found = 1;
    }
    return ok ? found : -1;
}

/* The first value of an Int64List, packed or not (every value a varint or a packed run that
 * decodes whole). 1 found, 0 none, -1 malformed. */
static int first_int(cursor list, uint64_t *first) {
    uint64_t number, value;
    int wire, ok = 1, found = 0;
    cursor item;
    while (next_field(&list, &number, &wire, &item, &value, &ok)) {
        if (number != 1)
            continue;
        if (wire == 0) {
            if (!found)
                *first = value;
            found = 1;
        } else if (wire == 2) {
            while (item.p < item.end) {
                if (!varint(&item, &value))
                    return -1;
                if (!found)
                    *first = value;
                found = 1;
            }
        } else {
            return -1;
        }
    }
    return ok ? found : -1;
}

/* Every level protowire.decode_example(buf, keys) parses is checked here as it checks it, so
 * that a record it refuses is never read: the Example, its Features, every map entry, and the
 * two features asked for (whole). */
static PyObject *example_features(PyObject *self, PyObject *args) {
    Py_buffer buf, bytes_key, int_key;
    if (!PyArg_ParseTuple(args, "y*y*y*:example_features", &buf, &bytes_key, &int_key))
        return NULL;
    const uint8_t *start = (const uint8_t *)buf.buf;
    cursor example = {start, start + buf.len}, features, entry, payload, kind;
    cursor image = {NULL, NULL};
    uint64_t number, value = 0, label = 0;
    int wire, ok = 1, found_bytes = 0, found_int = 0;
    while (ok && next_field(&example, &number, &wire, &features, &value, &ok)) {
        if (number != 1)
            continue;
        if (wire != 2) {
            ok = 0;
            break;
        }
        while (ok && next_field(&features, &number, &wire, &entry, &value, &ok)) {
            if (number != 1)
                continue;
            if (wire != 2) {
                ok = 0;
                break;
            }
            cursor name = {NULL, NULL}, feature = {NULL, NULL};
            while (ok && next_field(&entry, &number, &wire, &payload, &value, &ok)) {
                if ((number == 1 || number == 2) && wire != 2)
                    ok = 0;
                else if (number == 1)
                    name = payload;
                else if (number == 2)
                    feature = payload;
            }
            if (!ok || name.p == NULL)
                break;
            size_t name_len = (size_t)(name.end - name.p);
            int is_bytes = name_len == (size_t)bytes_key.len &&
                           memcmp(name.p, bytes_key.buf, name_len) == 0;
            int is_int = name_len == (size_t)int_key.len &&
                         memcmp(name.p, int_key.buf, name_len) == 0;
            if (!is_bytes && !is_int)
                continue;
            /* a key given twice: the last entry counts, as in a parsed map */
            int k = feature.p == NULL ? -1 : feature_kind(feature, &kind);
            int got = 0;
            if (k == 0)
                ok = 0;
            else if (is_bytes && k == 1)
                got = first_bytes(kind, &image);
            else if (is_int && k == 3)
                got = first_int(kind, &label);
            if (got < 0)
                ok = 0;
            if (is_bytes)
                found_bytes = got > 0;
            if (is_int)
                found_int = got > 0;
        }
    }
    PyBuffer_Release(&buf);
    PyBuffer_Release(&bytes_key);
    PyBuffer_Release(&int_key);
    if (!ok || !found_bytes || !found_int)
        Py_RETURN_NONE;
    return Py_BuildValue("nnL", (Py_ssize_t)(image.p - start), (Py_ssize_t)(image.end - image.p),
                         (long long)(int64_t)label);
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
