"""The part of Caffe's protobuf schema (BVLC caffe, src/caffe/proto/caffe.proto)
that a .caffemodel of AlexNet or GoogLeNet needs, built at import time, so
reading one needs the protobuf runtime and no Caffe.

Field numbers, types and defaults are Caffe's. One liberty: `BlobProto.data`
(packed repeated float) and `double_data` are declared as repeated bytes. A
packed field is one length-delimited run of little-endian values, the same
bytes on the wire as a bytes field, so numpy reads the weights with
np.frombuffer instead of a Python loop over 61 million floats, and a file
written here is byte for byte what Caffe writes.

NetParameter holds layers as V2 `layer` (field 100, string types) or, in files
from 2014, V1 `layers` (field 2, enum types, other field numbers).
"""
from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory

_F = descriptor_pb2.FieldDescriptorProto
_TYPES = {'string': _F.TYPE_STRING, 'bytes': _F.TYPE_BYTES,
          'float': _F.TYPE_FLOAT, 'bool': _F.TYPE_BOOL,
          'int32': _F.TYPE_INT32, 'int64': _F.TYPE_INT64,
          'uint32': _F.TYPE_UINT32}

# Caffe's V1LayerParameter.LayerType values of the layers these nets use,
# by their V2 type names.
V1_TYPES = {'Accuracy': 1, 'Concat': 3, 'Convolution': 4, 'Data': 5,
            'Dropout': 6, 'InnerProduct': 14, 'LRN': 15, 'Pooling': 17,
            'ReLU': 18, 'Softmax': 20, 'SoftmaxWithLoss': 21}
_V1_NAMES = {'Accuracy': 'ACCURACY', 'Concat': 'CONCAT',
             'Convolution': 'CONVOLUTION', 'Data': 'DATA',
             'Dropout': 'DROPOUT', 'InnerProduct': 'INNER_PRODUCT',
             'LRN': 'LRN', 'Pooling': 'POOLING', 'ReLU': 'RELU',
             'Softmax': 'SOFTMAX', 'SoftmaxWithLoss': 'SOFTMAX_LOSS'}
# Enums, so the text format (a deploy .prototxt) writes their names.
_ENUMS = {
    'V1LayerParameter.LayerType': {'NONE': 0, **{
        _V1_NAMES[k]: v for k, v in V1_TYPES.items()}},
    'PoolingParameter.PoolMethod': {'MAX': 0, 'AVE': 1, 'STOCHASTIC': 2},
    'LRNParameter.NormRegion': {'ACROSS_CHANNELS': 0, 'WITHIN_CHANNEL': 1},
}

# message -> [(field, number, type or message, label, default)]; label
# 'repeated' or 'packed' (repeated, packed), else optional.
_SCHEMA = {
    'BlobShape': [('dim', 1, 'int64', 'packed', None)],
    'BlobProto': [
        ('num', 1, 'int64', None, '0'), ('channels', 2, 'int64', None, '0'),
        ('height', 3, 'int64', None, '0'), ('width', 4, 'int64', None, '0'),
        ('data', 5, 'bytes', 'repeated', None),
        ('shape', 7, 'BlobShape', None, None),
        ('double_data', 8, 'bytes', 'repeated', None)],
    'ConvolutionParameter': [
        ('num_output', 1, 'uint32', None, None),
        ('bias_term', 2, 'bool', None, 'true'),
        ('pad', 3, 'uint32', 'repeated', None),
        ('kernel_size', 4, 'uint32', 'repeated', None),
        ('group', 5, 'uint32', None, '1'),
        ('stride', 6, 'uint32', 'repeated', None),
        ('pad_h', 9, 'uint32', None, '0'), ('pad_w', 10, 'uint32', None, '0'),
        ('kernel_h', 11, 'uint32', None, None),
        ('kernel_w', 12, 'uint32', None, None),
        ('stride_h', 13, 'uint32', None, None),
        ('stride_w', 14, 'uint32', None, None)],
    'PoolingParameter': [
        ('pool', 1, 'PoolMethod', None, 'MAX'),
        ('kernel_size', 2, 'uint32', None, None),
        ('stride', 3, 'uint32', None, '1'), ('pad', 4, 'uint32', None, '0'),
        ('kernel_h', 5, 'uint32', None, None),
        ('kernel_w', 6, 'uint32', None, None),
        ('stride_h', 7, 'uint32', None, None),
        ('stride_w', 8, 'uint32', None, None),
        ('pad_h', 9, 'uint32', None, '0'), ('pad_w', 10, 'uint32', None, '0'),
        ('global_pooling', 12, 'bool', None, 'false')],
    'LRNParameter': [
        ('local_size', 1, 'uint32', None, '5'),
        ('alpha', 2, 'float', None, '1'), ('beta', 3, 'float', None, '0.75'),
        ('norm_region', 4, 'NormRegion', None, 'ACROSS_CHANNELS'),
        ('k', 5, 'float', None, '1')],
    'InnerProductParameter': [
        ('num_output', 1, 'uint32', None, None),
        ('bias_term', 2, 'bool', None, 'true'),
        ('axis', 5, 'int32', None, '1')],
    'DropoutParameter': [('dropout_ratio', 1, 'float', None, '0.5')],
    'InputParameter': [('shape', 1, 'BlobShape', 'repeated', None)],
    'LayerParameter': [
        ('name', 1, 'string', None, None), ('type', 2, 'string', None, None),
        ('bottom', 3, 'string', 'repeated', None),
        ('top', 4, 'string', 'repeated', None),
        ('blobs', 7, 'BlobProto', 'repeated', None),
        ('convolution_param', 106, 'ConvolutionParameter', None, None),
        ('dropout_param', 108, 'DropoutParameter', None, None),
        ('inner_product_param', 117, 'InnerProductParameter', None, None),
        ('lrn_param', 118, 'LRNParameter', None, None),
        ('pooling_param', 121, 'PoolingParameter', None, None),
        ('input_param', 143, 'InputParameter', None, None)],
    'V1LayerParameter': [
        ('bottom', 2, 'string', 'repeated', None),
        ('top', 3, 'string', 'repeated', None),
        ('name', 4, 'string', None, None),
        ('type', 5, 'LayerType', None, 'NONE'),
        ('blobs', 6, 'BlobProto', 'repeated', None),
        ('convolution_param', 10, 'ConvolutionParameter', None, None),
        ('dropout_param', 12, 'DropoutParameter', None, None),
        ('inner_product_param', 17, 'InnerProductParameter', None, None),
        ('lrn_param', 18, 'LRNParameter', None, None),
        ('pooling_param', 19, 'PoolingParameter', None, None)],
    'NetParameter': [
        ('name', 1, 'string', None, None),
        ('layers', 2, 'V1LayerParameter', 'repeated', None),
        ('input', 3, 'string', 'repeated', None),
        ('input_dim', 4, 'int64', 'repeated', None),
        ('input_shape', 8, 'BlobShape', 'repeated', None),
        ('layer', 100, 'LayerParameter', 'repeated', None)],
}


def _file() -> descriptor_pb2.FileDescriptorProto:
  file = descriptor_pb2.FileDescriptorProto(name='research_caffe.proto',
                                            package='caffe', syntax='proto2')
  for message, fields in _SCHEMA.items():
    proto = file.message_type.add(name=message)
    enums = {}
    for path, values in _ENUMS.items():
      owner, enum = path.split('.')
      if owner == message:
        proto.enum_type.add(name=enum, value=[
            descriptor_pb2.EnumValueDescriptorProto(name=k, number=v)
            for k, v in values.items()])
        enums[enum] = f'.caffe.{path}'
    for name, number, kind, label, default in fields:
      field = proto.field.add(name=name, number=number)
      field.label = (_F.LABEL_REPEATED if label in ('repeated', 'packed')
                     else _F.LABEL_OPTIONAL)
      if kind in _TYPES:
        field.type = _TYPES[kind]
      elif kind in enums:
        field.type, field.type_name = _F.TYPE_ENUM, enums[kind]
      else:
        field.type, field.type_name = _F.TYPE_MESSAGE, f'.caffe.{kind}'
      if label == 'packed':
        field.options.packed = True
      if default is not None:
        field.default_value = default
  return file


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
NetParameter = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName('caffe.NetParameter'))
LayerParameter = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName('caffe.LayerParameter'))
BlobProto = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName('caffe.BlobProto'))
