"""On-disk formats: TFRecord framing + tf.train.Example, Caffe Datum, the manifest."""
